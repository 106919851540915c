#ifndef PKG00_L00_01_H
#define PKG00_L00_01_H
#include <string>
#include <vector>

namespace l00_01 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l00_01

#endif
