#ifndef PKG00_L00_02_H
#define PKG00_L00_02_H
#include <string>
#include <vector>

namespace l00_02 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l00_02

#endif
