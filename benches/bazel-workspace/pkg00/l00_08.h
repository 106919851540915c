#ifndef PKG00_L00_08_H
#define PKG00_L00_08_H
#include <string>
#include <vector>

namespace l00_08 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l00_08

#endif
