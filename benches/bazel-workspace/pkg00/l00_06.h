#ifndef PKG00_L00_06_H
#define PKG00_L00_06_H
#include <string>
#include <vector>

namespace l00_06 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l00_06

#endif
