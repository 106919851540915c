#ifndef PKG00_L00_00_H
#define PKG00_L00_00_H
#include <string>
#include <vector>

namespace l00_00 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l00_00

#endif
